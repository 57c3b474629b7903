# MedXAI app image: CPU inference by default (torch picks CUDA when the host passes a GPU).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY app.py ./
COPY pages/ pages/
COPY imaging/ imaging/
COPY models/ models/
COPY xai/ xai/
COPY training/ training/
COPY weights/ weights/
COPY .streamlit/ .streamlit/

RUN useradd --create-home --uid 10001 medxai && chown -R medxai /app
USER medxai

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health').status != 200)"

CMD ["streamlit", "run", "app.py", "--server.headless=true", "--server.address=0.0.0.0", "--server.port=8501"]
