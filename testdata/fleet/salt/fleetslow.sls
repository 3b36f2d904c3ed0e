# Long enough to SIGKILL a minion mid-job, or for the CLI to give up first.
fleet-slow:
  cmd.run:
    - name: sleep 8; echo slept
