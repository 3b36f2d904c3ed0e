jinja-error:
  test.nop:
    - name: {{ this_variable_does_not_exist.attribute }}
