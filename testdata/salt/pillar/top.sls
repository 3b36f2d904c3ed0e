base:
  '*':
    - fixture
