{% from 'map.jinja' import base %}
include:
  - common

web-index:
  file.managed:
    - name: {{ base }}/web/index.html
    - makedirs: True
    - contents: "<h1>hello from web1</h1>\n"

web-hello:
  cmd.run:
    - name: echo web says hello
    - require:
      - file: web-index
