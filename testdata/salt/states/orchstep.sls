# Applied by orch/deploy.sls's salt.state step: always has changes, so the
# orchestrate result shows changes: {out: highstate, ret: {minion: map}}.
orchstep-run:
  cmd.run:
    - name: echo applied by orchestrate
