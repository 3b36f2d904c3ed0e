ƒ¦return‘ÙáRendering SLS 'base:jinja_error' failed: Jinja variable 'this_variable_does_not_exist' is undefined; line 3

---
jinja-error:
  test.nop:
    - name: {{ this_variable_does_not_exist.attribute }}    <======================
---§retcode§successÂ