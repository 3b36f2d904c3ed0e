fail-exit:
  cmd.run:
    - name: exit 3

fail-test:
  test.fail_without_changes:
    - name: failed on purpose

fail-needs:
  test.succeed_without_changes:
    - name: never runs
    - require:
      - cmd: fail-exit

fail-ok:
  test.succeed_without_changes:
    - name: still fine
