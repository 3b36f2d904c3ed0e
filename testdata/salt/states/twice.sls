{% from 'map.jinja' import base %}
# Run twice: the first run has changes, the second has none.
twice-file:
  file.managed:
    - name: {{ base }}/twice/file.txt
    - makedirs: True
    - contents: "same content every time\n"

twice-dir:
  file.directory:
    - name: {{ base }}/twice/dir
    - makedirs: True
