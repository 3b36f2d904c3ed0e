{% from 'map.jinja' import base %}
fichier-é:
  file.managed:
    - name: {{ base }}/unicode/fichier-é.txt
    - makedirs: True
    - contents: "contenu réel — ça marche ✓\n"

日本語:
  test.configurable_test_state:
    - name: 日本語の名前
    - changes: True
    - result: True
    - comment: "コメント: 成功しました"

emoji-🚀:
  cmd.run:
    - name: echo "launch 🚀 ok — ünïcödé"

emoji-fail-💥:
  test.configurable_test_state:
    - name: explosion 💥
    - changes: False
    - result: False
    - comment: "échec voulu 💥 (unicode failure comment)"
