" llama.vim against codey: llama.cpp's /infill, served by `codey serve` on its default port.
let g:llama_config = {
    \ 'endpoint_fim': 'http://127.0.0.1:8000/infill',
    \ 'n_predict':    64,
    \ }
