base:
  '*':
    - common
  'web1':
    - web
  'db1':
    - db
