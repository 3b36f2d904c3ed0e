{% from 'map.jinja' import base %}
# Applied with test=True only: the file never exists, so result is null.
pending-file:
  file.managed:
    - name: {{ base }}/pending/never-created.txt
    - makedirs: True
    - contents: "would be written\n"

pending-cmd:
  cmd.run:
    - name: echo would run

pending-nothing:
  test.succeed_without_changes:
    - name: pending nothing
