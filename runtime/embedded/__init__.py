"""runtime.Pool, the supervised workers embedded in a script: the Pool (`pool`), its loop
thread (`loop`), batches of calls (`batches`), the record of a resumable run (`record`)
and the progress line (`progress`)."""
