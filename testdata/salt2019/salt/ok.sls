{% set base = '/tmp/saltship-fixture-2019/' ~ grains['id'] %}
ok-dir:
  file.directory:
    - name: {{ base }}
    - makedirs: True

ok-file:
  file.managed:
    - name: {{ base }}/ok.txt
    - contents: written by salt 2019.2
    - require:
      - file: ok-dir

ok-succeed:
  test.succeed_with_changes:
    - name: a change from 2019.2

ok-echo:
  cmd.run:
    - name: echo hello from 2019.2
