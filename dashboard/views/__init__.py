"""One Streamlit page per module; ``app.py`` runs them through ``st.navigation``."""
