{% from 'map.jinja' import base %}
fail-cmd-exit-3:
  cmd.run:
    - name: echo about to fail; echo to-stderr 1>&2; exit 3

fail-bad-source:
  file.managed:
    - name: {{ base }}/fail/bad-source.txt
    - makedirs: True
    - source: salt://does/not/exist.txt

fail-requisite:
  cmd.run:
    - name: echo never runs
    - require:
      - cmd: fail-cmd-exit-3

fail-onfail-handler:
  cmd.run:
    - name: echo cleaning up after failure
    - onfail:
      - cmd: fail-cmd-exit-3

fail-onfail-not-triggered:
  cmd.run:
    - name: echo not run because nothing failed
    - onfail:
      - test: fail-ok

fail-ok:
  test.succeed_without_changes:
    - name: fail ok

fail-onchanges-skipped:
  cmd.run:
    - name: echo not run because no changes
    - onchanges:
      - test: fail-ok
