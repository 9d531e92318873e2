package sqlgate.lib

limit := 5
