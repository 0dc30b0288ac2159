"""Python addons (``-s FILE.py``): scripts that watch and change flows.

``api``       what an addon sees: ``Flow``, ``Request``, ``Response``, ``Headers``
``loader``    loading a script, and loading it again when it changes
``host``      the hook subscriber that runs addons on live flows
``verdicts``  what an addon's changes mean (a kill, an answer, edits)
``har``       ``HarFile``: a helper for addons that write their own HAR

See docs/addons.md.
"""
