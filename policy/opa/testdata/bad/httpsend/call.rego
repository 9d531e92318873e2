package sqlgate.call

default allow := false

allow if http.send({"method": "GET", "url": "https://example.com"}).status_code == 200
