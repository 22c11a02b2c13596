"""The local web demo (``babeltower serve``): one page with a tab per head, offline.

:mod:`babeltower.serve.app` builds and runs the app; :mod:`babeltower.serve.tabs` holds
one module per head's tab. Needs the optional ``serve`` dependencies (fastapi, uvicorn,
python-multipart).
"""
