yaml-error:
  test.nop:
    - name: ok
   - bad: indentation
  : [unclosed
