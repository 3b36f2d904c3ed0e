# ~100 KB of stdout in one cmd.run state.
big-output:
  cmd.run:
    - name: yes 'saltship big output line 0123456789' | head -n 2600
