"""Where sources come from: the built-in DataSync source, the spec files shipped in
``etl/sources/specs/``, spec files given by path, and third-party packages through the
``etl.sources`` entry-point group (see ``registry``).
"""
