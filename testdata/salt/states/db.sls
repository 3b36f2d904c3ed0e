{% from 'map.jinja' import base %}
include:
  - common

db-config:
  file.managed:
    - name: {{ base }}/db/db.conf
    - makedirs: True
    - contents: "port = 5432\n"

db-status:
  cmd.run:
    - name: echo db is fine
    - require:
      - file: db-config
