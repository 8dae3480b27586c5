"""govtrace.dashboard: the investigator's dashboard (Streamlit).

Usage::

    govtrace serve &                                  # or: make demo
    govtrace dashboard --server http://127.0.0.1:4318 [--port 8501] [--users users.yaml]

The dashboard reads only through the collector's read API (never the live DuckDB file), records
every view a person opens and every export as an access event, and, when a users file is given,
asks people to sign in and limits what each role may see and export. See docs/dashboard.md.

Layout: ``app.py`` is the entrypoint (page config, sign-in, shared sidebar, ``st.navigation``);
``views/`` holds one page per screen; ``data.py`` owns the cached reads; ``queries.py`` the SQL the
views need beyond ``govtrace.analytics``; ``launch.py`` and ``commands.py`` start it.
"""
