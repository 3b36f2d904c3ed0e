{#- /etc/saltship/saltship.toml from the pillar (saltship:config), and the secrets from the
    pillar (saltship:secrets) in files of mode 0600 that the config names. #}
{%- from "saltship/map.jinja" import saltship with context %}
{%- set dir = saltship.config_dir %}
{%- set settings = salt['slsutil.merge']({}, saltship.config) %}
{%- for name in saltship.secrets %}
{%-   do settings.update({name ~ '-file': dir ~ '/' ~ name}) %}
{%- endfor %}

saltship-config-dir:
  file.directory:
    - name: {{ saltship.root ~ dir }}
    - makedirs: True
    - mode: '0755'

{%- for name in saltship.secrets %}

saltship-secret-{{ name }}:
  file.managed:
    - name: {{ saltship.root ~ dir ~ '/' ~ name }}
    # From the pillar at apply time: the secret is not part of the rendered state.
    - contents_pillar: saltship:secrets:{{ name }}
    - user: {{ saltship.user }}
    - group: {{ saltship.group }}
    - mode: '0600'
    - show_changes: False
    - require:
      - file: saltship-config-dir
{%- endfor %}

saltship-config:
  file.managed:
    - name: {{ saltship.root ~ dir }}/saltship.toml
    - source: salt://saltship/files/saltship.toml.jinja
    - template: jinja
    - context:
        settings: {{ settings | json }}
    - user: {{ saltship.user }}
    - group: {{ saltship.group }}
    # Not writable by others: saltship warns about a config file others can change.
    - mode: '0644'
    - require:
      - file: saltship-config-dir
