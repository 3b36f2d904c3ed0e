{% from 'map.jinja' import base %}
fixture-root:
  file.directory:
    - name: {{ base }}
    - makedirs: True

common-motd:
  file.managed:
    - name: {{ base }}/motd
    - contents: "managed by saltship fixture\n"
    - require:
      - file: fixture-root

common-nothing-to-do:
  test.succeed_without_changes:
    - name: common nothing to do
