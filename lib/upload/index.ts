// Resumable upload of diagnostics files to Azure Blob Storage through a container SAS URL.
export { uploadFile, type UploadResult } from './blob-upload';
export { DEFAULT_BLOCK_SIZE, type UploadFileOptions } from './options';
export { parseContainerSasUrl, SasExpiredError, type ContainerSasInfo, type ParseContainerSasOptions } from './sas-url';
export { UploadError, UploadAbortedError } from './errors';
export { formatUploadEvent, type UploadEvent, type UploadEventListener } from './events';
export { uploadRecordPath, readUploadRecord, type UploadRecord } from './upload-record';
export { blockId, MAX_BLOCK_SIZE, MAX_BLOCKS } from './blocks';
