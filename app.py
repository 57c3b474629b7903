"""MedXAI Streamlit entry point: page setup, navigation and the ever-present disclaimer."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="MedXAI", layout="wide")

navigation = st.navigation([
    st.Page("pages/home.py", title="Home", default=True),
])
st.sidebar.caption("Research tool, not a diagnosis. Uploads stay in memory and are never saved.")
navigation.run()
