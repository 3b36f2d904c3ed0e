slow-sleep:
  cmd.run:
    - name: sleep 6; echo slept
