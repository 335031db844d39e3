"""`plan=true`: what a run will do and cost, checked before a GPU hour is spent."""
