{#- Run saltship: the watch daemon, or the sync timer and path units (not both: they share the
    checkpoint's lock). The other mode's units are stopped and disabled first. Restarted when
    the configuration or a secret changes, and (from init.sls) when the package changes. #}
{%- from "saltship/map.jinja" import saltship, units with context %}
{%- if saltship.service not in units %}
{{ raise('saltship:service must be watch, sync or none, not ' ~ saltship.service) }}
{%- endif %}
{%- set off = [] %}
{%- for mode, names in units | dictsort if mode != saltship.service %}
{%-   do off.extend(names) %}
{%- endfor %}

include:
  - saltship.config

{%- for unit in off %}

saltship-unit-{{ unit }}:
  service.dead:
    - name: {{ unit }}
    - enable: False
{%- endfor %}

{%- for unit in units[saltship.service] %}

saltship-unit-{{ unit }}:
  service.running:
    - name: {{ unit }}
    - enable: True
    - watch:
      - sls: saltship.config
{%-   if off %}
    - require:
{%-     for other in off %}
      - service: saltship-unit-{{ other }}
{%-     endfor %}
{%-   endif %}
{%- endfor %}
