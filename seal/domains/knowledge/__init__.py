"""Knowledge incorporation: a passage in, restated text as the self-edit, closed-book QA accuracy as
the reward."""
