ƒ¦returnÚ	The minion function caused an exception: Traceback (most recent call last):
  File "/root/.cache/saltship/salt-venv/lib/python3.11/site-packages/salt/minion.py", line 3199, in _thread_return
    return_data = minion_instance._execute_job_function(
                  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/root/.cache/saltship/salt-venv/lib/python3.11/site-packages/salt/minion.py", line 3073, in _execute_job_function
    return_data = self.executors[fname](opts, data, func, args, kwargs)
                  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/root/.cache/saltship/salt-venv/lib/python3.11/site-packages/salt/loader/lazy.py", line 177, in __call__
    ret = self.loader.run(run_func, *args, **kwargs)
          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/root/.cache/saltship/salt-venv/lib/python3.11/site-packages/salt/loader/lazy.py", line 1490, in run
    return self._last_context.run(self._run_as, _func_or_method, *args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/root/.cache/saltship/salt-venv/lib/python3.11/site-packages/salt/loader/lazy.py", line 1505, in _run_as
    ret = _func_or_method(*args, **kwargs)
          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/root/.cache/saltship/salt-venv/lib/python3.11/site-packages/salt/executors/direct_call.py", line 10, in execute
    return func(*args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^
  File "/root/.cache/saltship/salt-venv/lib/python3.11/site-packages/salt/loader/lazy.py", line 177, in __call__
    ret = self.loader.run(run_func, *args, **kwargs)
          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/root/.cache/saltship/salt-venv/lib/python3.11/site-packages/salt/loader/lazy.py", line 1490, in run
    return self._last_context.run(self._run_as, _func_or_method, *args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/root/.cache/saltship/salt-venv/lib/python3.11/site-packages/salt/loader/lazy.py", line 1505, in _run_as
    ret = _func_or_method(*args, **kwargs)
          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/root/.cache/saltship/salt-venv/lib/python3.11/site-packages/salt/modules/test.py", line 552, in exception
    raise Exception(message)
Exception: saltship boom
§retcode§successÂ