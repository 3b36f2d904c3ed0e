# -*- coding: utf-8 -*-
# Python 2 only (Salt 2019.2 fixture): returns a byte string that is not UTF-8.
def latin1():
    return 'caf\xe9 \xff\xfe end'
