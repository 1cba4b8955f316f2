"""`pgalert serve`: the inbound side. Providers tell pgalert what responders did; tools raise alerts over HTTP.

verify.py and translate.py are pure (signatures, tokens, payload shapes); app.py does the HTTP and database
I/O; openapi.py describes the generic API.
"""
