"""ab_pipelines: the domain library of the experimentation platform.

It knows nothing of Dagster or Streamlit: assets/, jobs/, streamlit_app/ and the CLI use it.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
