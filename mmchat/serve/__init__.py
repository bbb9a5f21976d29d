"""`mmchat serve`: an edge like the CLI. HTTP requests in OpenAI's and Anthropic's shapes are parsed
into mmchat's own types and answered by the Runner, one at a time.

app.py        the ASGI app: thin routes, every failure the API's error object
openai.py     Chat Completions: request fields checked, completions and chunks shaped
anthropic.py  Messages: content blocks to parts, messages and stream events shaped
queue.py      one worker thread, a bounded queue, cancel and drain; the seam for saved KV states
guard.py      the API key, the body limit, the access line, the bind check
errors.py     failures as each API's error object and status
run.py        uvicorn, SIGTERM, logging (imported only by the command: starlette and uvicorn load late)
"""
