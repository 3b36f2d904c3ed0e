this is not msgpack
return: {}
