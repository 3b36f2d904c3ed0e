# -*- coding: utf-8 -*-
# Python 2 only (Salt 2019.2 fixture): a state whose comment and changes are byte
# strings that are not UTF-8 (latin-1 e-acute, 0xff 0xfe).
def latin1(name):
    return {
        'name': name,
        'result': True,
        'comment': 'caf\xe9 comment \xff',
        'changes': {'stdout': 'caf\xe9 \xff\xfe end'},
    }
