package sqlgate.fixtures

trusted(principal) if "sales" in principal.groups

test_sales_allowed if data.sqlgate.call.allow with input as {"principal": {"groups": ["sales"]}}
