"""Sensors on the library folder.

Books are registered by `corpus register` / the `register_books_job` until the library sensor
(new, changed and removed books, issue #4) lands here.
"""
