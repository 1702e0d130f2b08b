"""The example jobs' own Python functions (``transform.python: functions.payments:...``).

A job names a function as ``package.module:function``; onceflow imports it from the
project folder and ships its package to the executors.
"""
