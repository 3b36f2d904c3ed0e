ƒ¦return‘Ù³Rendering SLS 'base:yaml_error' failed: while parsing a block mapping
  in "<unicode string>", line 2, column 3
did not find expected key
  in "<unicode string>", line 4, column 4§retcode§successÂ