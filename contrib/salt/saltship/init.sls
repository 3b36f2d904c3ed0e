{#- saltship: install the package, write its configuration, run the service. #}
{%- from "saltship/map.jinja" import saltship with context %}

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
  pkg.installed:
{%- if saltship.pkg.source %}
    - sources:
      - {{ saltship.pkg.name }}: {{ saltship.pkg.source | json }}
{%- else %}
    - name: {{ saltship.pkg.name }}
{%- endif %}
    # The package creates the saltship user and ships a commented saltship.toml, which
    # saltship.config then replaces.
    - require_in:
      - sls: saltship.config
