{#- saltship: install the package, write its configuration, run the service. #}
{%- from "saltship/map.jinja" import saltship, units with context %}

include:
  - saltship.config
  - saltship.service

{%- if saltship.pkg.repo and not saltship.pkg.source %}

saltship-repo:
  pkgrepo.managed:
{%-   for key, value in saltship.pkg.repo.items() %}
    - {{ key }}: {{ value | json }}
{%-   endfor %}
    - require_in:
      - pkg: saltship-pkg
{%- endif %}

saltship-pkg:
{%- if saltship.pkg.source %}
  pkg.installed:
    - sources:
      - {{ saltship.pkg.name }}: {{ saltship.pkg.source | json }}
{%- elif saltship.pkg.version == 'latest' %}
  pkg.latest:
    - name: {{ saltship.pkg.name }}
{%- else %}
  pkg.installed:
    - name: {{ saltship.pkg.name }}
{%-   if saltship.pkg.version %}
    - version: {{ saltship.pkg.version | json }}
{%-   endif %}
{%- endif %}
    # The package creates the saltship user and ships a commented saltship.toml, which
    # saltship.config then replaces.
    - require_in:
      - sls: saltship.config
{%- if units.get(saltship.service) %}
    # A new version restarts the service onto the new binary (the package's own scripts
    # restart what runs too; a second restart loses nothing: a stop confirms what was sent).
    - watch_in:
{%-   for unit in units[saltship.service] %}
      - service: saltship-unit-{{ unit }}
{%-   endfor %}
{%- endif %}
