¦return…¦stdoutÙERROR: A necessary path for salt thin unexpectedly exists:
 ERROR: salt path "/tmp/saltship-regen.aJQH1M/sshd/not-a-directory" exists but is not a directory
¦stderrÙ`ERROR: salt path "/tmp/saltship-regen.aJQH1M/sshd/not-a-directory" exists but is not a directory§retcodeI¦parsedÀ¦_errorÙ,The command resulted in a non-zero exit code