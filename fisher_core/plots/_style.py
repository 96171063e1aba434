"""Shared look: colours and margins of every figure."""

from __future__ import annotations

import plotly.express as px

PRIMARY = "#4a6fa5"
SECONDARY = "#c0504d"
QUALITATIVE = px.colors.qualitative.Dark24
MARGIN = dict(l=10, r=10, t=40, b=10)
