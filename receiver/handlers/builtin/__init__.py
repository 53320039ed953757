"""Built-in handlers. Each module is a plugin, loaded through the ``receiver.handlers`` entry
points like any other (see ``receiver.handlers.plugins.BUILTIN_PLUGINS``); importing this package
registers nothing.
"""
