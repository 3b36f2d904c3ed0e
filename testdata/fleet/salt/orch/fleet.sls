# Orchestration against a fleet where f-down is down (and f-silent never ran).
fleet-state:
  salt.state:
    - tgt: f-web1,f-down
    - tgt_type: list
    - sls:
      - twice
    - timeout: 10

fleet-ping:
  salt.function:
    - name: test.ping
    - tgt: '*'
    - timeout: 10
