# cmd.run prints bytes that are not UTF-8: the 2019.2 minion already turns them into U+FFFD.
bytes-out:
  cmd.run:
    - name: printf 'caf\351 \377\376 end\n'

# A custom state (salt://_states/saltship_bytes.py) returns Python 2 byte strings.
bytes-raw:
  saltship_bytes.latin1:
    - name: raw latin-1 bytes
