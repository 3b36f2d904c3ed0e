orch-state:
  salt.state:
    - tgt: old1
    - sls:
      - ok

orch-ping:
  salt.function:
    - name: test.ping
    - tgt: 'old*'
    - require:
      - salt: orch-state
