"""The analysts' dashboard (Streamlit): reads the gold, silver and ops tables, never starts Spark.

- :mod:`streamlit_app.data`: what each page shows, as plain functions of the Lake and the registry
  (pandas frames and dicts; no Streamlit), so they are unit-tested and cached by table version;
- :mod:`streamlit_app.authoring`: drafting a new experiment, validated with ``abp validate``'s rules;
- :mod:`streamlit_app.launch`: ``launch(port, home)`` starts ``streamlit run`` on loopback;
- ``app.py`` (the entry point) and ``views/`` (one script per page) are the Streamlit side.
"""

__all__: list[str] = []
