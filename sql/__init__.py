"""pgalert's SQL, shipped inside the wheel as package data (`importlib.resources.files("dispatcher.sql")`)."""
