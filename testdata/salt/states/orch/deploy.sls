deploy-common:
  salt.state:
    - tgt: 'web1,db1'
    - tgt_type: list
    - sls:
      - common
      - orchstep

ping-all:
  salt.function:
    - name: test.ping
    - tgt: 'web1,db1'
    - tgt_type: list
    - require:
      - salt: deploy-common

say-hello:
  salt.function:
    - name: cmd.run
    - tgt: web1
    - arg:
      - echo orchestrated hello
    - require:
      - salt: ping-all
