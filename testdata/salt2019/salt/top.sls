base:
  '*':
    - ok
